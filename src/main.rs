//! The one `sluice` binary: every role of the fleet (`coordinator`, `extractor`,
//! `transformer`, `loader`, or `all` in one process) and the admin commands.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cli;
mod demo;
mod export;
mod ops;
mod remote;
mod roles;
mod settings;
mod telemetry;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cli::Cli::parse();
    match cli::execute(cli).await {
        Ok(code) => std::process::exit(code),
        // A closed stdout means the reader (`| head`) has what it wanted.
        Err(e) if cli::output::is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
