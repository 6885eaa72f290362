#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine: formatting, lints, every
# test of every crate. CI (.ci/run) runs exactly this.
#
# Nothing outside the Rust toolchain is needed yet. When the JetStream backend lands,
# this script installs a pinned nats-server from PyPI here, before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Property tests print their seed on failure; keep the default case counts in CI.
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
