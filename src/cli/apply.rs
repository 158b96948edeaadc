//! `sluice apply -f`: creates or updates the connections and imports a spec declares, through
//! the same service as `POST /v1/apply`; `${NAME}` is expanded from this process's environment.

use super::backend::{Access, Backend};
use super::output::outln;
use crate::settings::Settings;
use std::path::PathBuf;

/// `sluice apply`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The spec file (YAML).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// New imports are ready (or scheduled) at once, without waiting for a dry run: for
    /// specs already dry-run elsewhere.
    #[arg(long)]
    ready: bool,
}

/// Applies the spec file; every line of the report is printed.
pub async fn execute(settings: &Settings, args: ApplyArgs) -> anyhow::Result<i32> {
    let file = args.file.display();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?;
    // `${SLUICE_WORKSPACE:-name}` (as a downloaded spec names its workspace) is the workspace
    // this command acts in, whether given by flag or by the environment.
    let env = |name: &str| match name {
        "SLUICE_WORKSPACE" => settings.workspace.clone(),
        _ => std::env::var(name).ok(),
    };
    let text = sluice_coordinator::spec::interpolate(&text, env)
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    // The spec is checked here first, so a bad file is refused before anything is written.
    let spec = sluice_coordinator::spec::parse_with(&text, |_| None)
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    if let Some(given) = settings
        .workspace
        .as_deref()
        .filter(|w| *w != spec.workspace)
    {
        anyhow::bail!(
            "{file}: the spec declares workspace {:?}, not {given:?} (--workspace or SLUICE_WORKSPACE)",
            spec.workspace
        );
    }
    let backend = Backend::open_as(settings, &spec.workspace, Access::WRITE_SECRETS, true)
        .await
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let applied = backend
        .apply(&text, args.ready)
        .await
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    for line in applied.lines {
        outln!("{line}");
    }
    Ok(0)
}
