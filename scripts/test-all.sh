#!/usr/bin/env bash
# The one command that installs what the tests need on a fresh Debian machine (as root)
# and runs every test: unit tests, integration tests against real components (fakepve,
# libvirtd + QEMU), and the conformance harnesses. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
bash scripts/ci/install-deps.sh
bash scripts/ci/start-services.sh
cargo build --workspace --all-features --bins
cargo test --workspace --all-features --no-fail-fast
