//! The `stemma` command line.

mod audit;
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
    /// Run the gRPC service on the embedded store.
    Serve {
        /// The data directory (created if missing).
        #[arg(long, default_value = "./stemma-data")]
        data: PathBuf,
        /// Where to listen (overrides the config).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The config file (default: <data>/stemma.toml, written on a first start).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to serve Prometheus metrics (overrides the config).
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Play the seeds' story against a running server: 426 contributors paid to the cent.
    Demo {
        /// The server's URL.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        server: String,
        /// A `<role>.token` file; give one per role the demo needs (gateway, community,
        /// finance, auditor), or use --tokens-dir.
        #[arg(long = "token-file")]
        token_files: Vec<PathBuf>,
        /// A directory of `<role>.token` files (a data directory's `tokens/`).
        #[arg(long, default_value = "./stemma-data/tokens")]
        tokens_dir: PathBuf,
        /// The production's feedback window, in seconds (14 days in real life).
        #[arg(long, default_value_t = 3)]
        window_seconds: u64,
    },
    /// Operate on the embedded event store directly.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Rebuild and inspect the read models.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Auditors' tools; read-only, they never take the writer lock.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write every event with its envelope as JSON lines to standard output (read-only).
    Export(audit::ExportArgs),
    /// Read an export into a new data directory, re-checking every hash.
    Import(audit::ImportArgs),
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
    // Synchronous, with exit codes of their own (1 = findings): no runtime needed.
    let cli = match cli.command {
        Command::Audit(command) => return audit::run(command),
        Command::Export(args) => return audit::export(args),
        Command::Import(args) => return audit::import(args),
        command => Cli { command },
    };
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
            Command::Serve {
                data,
                listen,
                config,
                metrics_listen,
            } => serve(data, listen, config, metrics_listen)
                .await
                .map_err(Into::into),
            Command::Demo {
                server,
                token_files,
                tokens_dir,
                window_seconds,
            } => demo(server, token_files, tokens_dir, window_seconds)
                .await
                .map_err(Into::into),
            Command::Store(StoreCommand::Status { data, json }) => {
                store::status(&data, json).await.map_err(Into::into)
            }
            Command::Projections(command) => projections::run(command).await.map_err(Into::into),
            Command::Audit(_) | Command::Export(_) | Command::Import(_) => {
                unreachable!("handled before the runtime starts")
            }
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

async fn serve(
    data: PathBuf,
    listen: Option<std::net::SocketAddr>,
    config: Option<PathBuf>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    let options = crate::server::ServeOptions {
        listen,
        config,
        metrics_listen,
        ..crate::server::ServeOptions::new(data)
    };
    let bound = crate::server::bind(&options)
        .await
        .map_err(|e| e.to_string())?;
    println!("stemma listening on {}", bound.address);
    bound
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn demo(
    server: String,
    token_files: Vec<PathBuf>,
    tokens_dir: PathBuf,
    window_seconds: u64,
) -> Result<(), String> {
    let files = if token_files.is_empty() {
        crate::demo::token_files_in(&tokens_dir)?
    } else {
        token_files
    };
    let tokens = crate::demo::read_tokens(&files)?;
    let summary = crate::demo::run(&server, &tokens, window_seconds, &mut |line| {
        println!("{line}")
    })
    .await?;
    crate::demo::print_summary(&summary);
    if summary.pool == summary.line_amounts_total && summary.pool == summary.payouts_total {
        Ok(())
    } else {
        Err("the totals do not match".into())
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
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
