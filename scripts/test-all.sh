#!/usr/bin/env bash
# The one command that installs what the tests need on a fresh Debian machine (as root)
# and runs every test: unit tests, integration tests against real components (fakepve,
# libvirtd + QEMU), and the conformance harnesses. `.ci/run` calls exactly this.
#
# Gates first (each fails the run): formatting (rustfmt.toml), clippy with warnings as
# errors on every target and feature, and no unused dependencies (cargo-machete; a crate
# that needs an exception lists it under [package.metadata.cargo-machete] with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
bash scripts/ci/install-deps.sh
echo "test-all: gate: cargo fmt --all --check"
cargo fmt --all --check
echo "test-all: gate: cargo machete"
cargo machete
echo "test-all: gate: cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
bash scripts/ci/start-services.sh
cargo build --workspace --all-features --bins
cargo test --workspace --all-features --no-fail-fast
