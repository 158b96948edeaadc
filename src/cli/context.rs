//! The workspace a command acts in, like a kubectl context: `--workspace`, else
//! `SLUICE_WORKSPACE`, else the one `sluice config set workspace W` saved in a small config
//! file. A command that needs a workspace and has none says how to give one; nothing is
//! assumed.

use super::output::{emit, outln, Output};
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `sluice config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Save a default: `workspace` (the workspace commands act in without --workspace).
    Set {
        /// The setting's name.
        key: String,
        /// Its value.
        value: String,
    },
    /// Print one saved setting.
    Get {
        /// The setting's name.
        key: String,
    },
    /// Forget a saved setting.
    Unset {
        /// The setting's name.
        key: String,
    },
    /// Print the config file's path and every setting, with where the effective workspace
    /// comes from.
    Show {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// The settings file: the saved defaults.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The workspace commands act in when no `--workspace` or `SLUICE_WORKSPACE` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// The settings a config file can hold.
const KEYS: [&str; 1] = ["workspace"];

/// Where the config file is: `SLUICE_CONFIG`, else `$XDG_CONFIG_HOME/sluice/config.yaml`,
/// else `~/.config/sluice/config.yaml`.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".config")
        });
    base.join("sluice").join("config.yaml")
}

/// Reads the config file; an absent one holds nothing.
pub fn load() -> anyhow::Result<Config> {
    let path = path();
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Ok(Config::default()),
        Ok(text) => serde_norway::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                sluice_coordinator::spec::suggest::unknown_name(&e.to_string())
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

fn save(config: &Config) -> anyhow::Result<()> {
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    let text = serde_norway::to_string(config)?;
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Where the effective workspace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--workspace`, or `SLUICE_WORKSPACE` (clap reads both into one flag).
    Given,
    /// The config file.
    Config,
}

/// The workspace a command acts in, if any is set, and where it came from.
pub fn resolve(settings: &Settings) -> anyhow::Result<Option<(String, Source)>> {
    if let Some(w) = settings.workspace.as_deref().filter(|w| !w.is_empty()) {
        return Ok(Some((w.to_string(), Source::Given)));
    }
    Ok(load()?.workspace.map(|w| (w, Source::Config)))
}

/// The remedy for a command that needs a workspace and has none.
pub const NO_WORKSPACE: &str = "no workspace given: pass --workspace W, set SLUICE_WORKSPACE=W, \
     or make W the default with `sluice config set workspace W`";

/// The workspace a command acts in, or the error saying how to set one.
pub fn workspace(settings: &Settings) -> anyhow::Result<String> {
    resolve(settings)?
        .map(|(w, _)| w)
        .ok_or_else(|| anyhow::anyhow!(NO_WORKSPACE))
}

fn check_key(key: &str) -> anyhow::Result<()> {
    if KEYS.contains(&key) {
        return Ok(());
    }
    let hint = sluice_coordinator::spec::suggest::nearest(key, &KEYS)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    anyhow::bail!(
        "{key:?} is not a setting (settings: {}){hint}",
        KEYS.join(", ")
    )
}

/// Runs one `sluice config` command.
pub fn execute(settings: &Settings, command: ConfigCommand) -> anyhow::Result<i32> {
    match command {
        ConfigCommand::Set { key, value } => {
            check_key(&key)?;
            sluice_coordinator::spec::check_object_name("workspace", &value)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut config = load()?;
            config.workspace = Some(value.clone());
            save(&config)?;
            outln!("workspace set to {value} in {}", path().display());
        }
        ConfigCommand::Get { key } => {
            check_key(&key)?;
            match load()?.workspace {
                Some(w) => outln!("{w}"),
                None => return Ok(1),
            }
        }
        ConfigCommand::Unset { key } => {
            check_key(&key)?;
            let mut config = load()?;
            config.workspace = None;
            save(&config)?;
            outln!("workspace unset in {}", path().display());
        }
        ConfigCommand::Show { output } => {
            let effective = resolve(settings)?;
            let from = |s: Source| match s {
                Source::Given => "--workspace or SLUICE_WORKSPACE",
                Source::Config => "the config file",
            };
            let shown = serde_json::json!({
                "path": path().display().to_string(),
                "saved": load()?,
                "workspace": effective.as_ref().map(|(w, _)| w),
                "workspace_from": effective.as_ref().map(|(_, s)| from(*s)),
            });
            emit(output, &shown, |out| {
                writeln!(out, "config file  {}", path().display())?;
                match &effective {
                    Some((w, s)) => writeln!(out, "workspace    {w} (from {})", from(*s)),
                    None => writeln!(out, "workspace    none ({NO_WORKSPACE})"),
                }
            })?;
        }
    }
    Ok(0)
}
