//! The `stemma` command line.

mod projections;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stemma",
    version,
    about = "Stemma: an event-sourced collaboration ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operate on the embedded event store directly.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Rebuild and inspect the read models.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Open (or create) a data directory, check the whole log, and print its state.
    ///
    /// Takes the writer lock: it fails while `stemma serve` runs on the same directory.
    Status {
        /// The data directory.
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        match cli.command {
            Command::Store(StoreCommand::Status { data, json }) => {
                store::status(&data, json).await.map_err(Into::into)
            }
            Command::Projections(command) => projections::run(command).await.map_err(Into::into),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
