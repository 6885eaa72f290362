//! The `stemma` binary: parses arguments and hands off. Each subcommand lives in
//! `services::cli`.

use clap::Parser;

/// mimalloc, not glibc malloc: rebuilding projections and replaying the history allocate
/// and free small blocks at a high rate, where glibc spent ~40% of the CPU (see
/// ARCHITECTURE.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    services::allocator::configure();
    services::cli::run(services::cli::Cli::parse())
}
