#!/usr/bin/env bash
# Creates the isolated Python venv (no system site packages) in which
# crates/cli/tests/cloudshell_cpcore.rs runs testing/cloudshell/cpcore_check.py with
# Quali's cloudshell-cp-core (pins in testing/cloudshell/requirements-cpcore.txt).
# Idempotent and bounded (scripts/ci/python-venv.sh).
# Location: $POLYVISOR_CPCORE_VENV, default target/venv-cloudshell-cpcore in the repo.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
exec bash "$root/scripts/ci/python-venv.sh" venv-cloudshell-cpcore \
  "${POLYVISOR_CPCORE_VENV:-$root/target/venv-cloudshell-cpcore}" \
  "$root/testing/cloudshell/requirements-cpcore.txt" "import cloudshell.cp.core.request_actions"
