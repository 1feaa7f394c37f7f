#!/usr/bin/env bash
# Creates the isolated Python venv with Quali's shellfoundry (pins in
# testing/cloudshell/requirements-shellfoundry.txt) for crates/cli/tests/cloudshell_shellfoundry.rs.
# Idempotent and bounded (scripts/ci/python-venv.sh).
# Location: $POLYVISOR_SHELLFOUNDRY_VENV, default target/venv-shellfoundry in the repo.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
exec bash "$root/scripts/ci/python-venv.sh" venv-shellfoundry \
  "${POLYVISOR_SHELLFOUNDRY_VENV:-$root/target/venv-shellfoundry}" \
  "$root/testing/cloudshell/requirements-shellfoundry.txt" "import shellfoundry"
