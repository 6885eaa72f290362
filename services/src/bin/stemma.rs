//! The `stemma` binary: parses arguments and hands off. Each subcommand lives in
//! `services::cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    services::cli::run(services::cli::Cli::parse())
}
