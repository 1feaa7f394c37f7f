#!/usr/bin/env bash
# Creates the isolated Python venv (no system site packages) in which
# crates/cli/tests/cloudshell_cpcore.rs runs testing/cloudshell/cpcore_check.py with
# Quali's cloudshell-cp-core (pins in testing/cloudshell/requirements-cpcore.txt).
# Idempotent: a venv whose stamp matches the requirements file is left as it is (quick).
# Bounded: venv + pip install get 10 minutes, pip 60 s per request and 2 retries.
# Location: $POLYVISOR_CPCORE_VENV, default target/venv-cloudshell-cpcore in the repo.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
req="$root/testing/cloudshell/requirements-cpcore.txt"
venv="${POLYVISOR_CPCORE_VENV:-$root/target/venv-cloudshell-cpcore}"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.polyvisor-stamp" 2>/dev/null)" = "$want" ]; then
  echo "venv-cloudshell-cpcore: $venv is up to date"
  exit 0
fi
echo "venv-cloudshell-cpcore: creating $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! timeout 600 bash -c '
  python3 -m venv "$1" &&
  "$1/bin/python" -m pip install -q --disable-pip-version-check --no-input --timeout 60 --retries 2 -r "$2" &&
  "$1/bin/python" -c "import cloudshell.cp.core.request_actions"
' _ "$venv" "$req"; then
  rm -rf "$venv"
  echo "venv-cloudshell-cpcore: could not create $venv" >&2
  exit 1
fi
echo "$want" > "$venv/.polyvisor-stamp"
