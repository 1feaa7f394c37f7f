#!/usr/bin/env bash
# Creates an isolated Python venv (no system site packages) from a requirements file:
#   python-venv.sh NAME VENV_DIR REQUIREMENTS CHECK_PYTHON_CODE
# Idempotent: a venv whose stamp matches the requirements file is left as it is (quick).
# Bounded: venv + pip install get 10 minutes, pip 60 s per request and 2 retries; the venv
# counts as made only when CHECK_PYTHON_CODE runs in it. Used by venv-cloudshell-cpcore.sh
# and venv-shellfoundry.sh.
set -euo pipefail
name="$1" venv="$2" req="$3" check="$4"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.polyvisor-stamp" 2>/dev/null)" = "$want" ]; then
  echo "$name: $venv is up to date"
  exit 0
fi
echo "$name: creating $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! timeout 600 bash -c '
  python3 -m venv "$1" &&
  "$1/bin/python" -m pip install -q --disable-pip-version-check --no-input --timeout 60 --retries 2 -r "$2" &&
  "$1/bin/python" -c "$3"
' _ "$venv" "$req" "$check"; then
  rm -rf "$venv"
  echo "$name: could not create $venv" >&2
  exit 1
fi
echo "$want" > "$venv/.polyvisor-stamp"
