#!/usr/bin/env bash
# Installs the Debian packages in apt-packages.txt (one `apt-get update`, only when
# something is missing) and the PyPI packages in requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t pkgs < <(grep -v '^\s*#' "$here/apt-packages.txt" | tr -s ' \t' '\n' | sed '/^$/d')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if grep -qv '^\s*#' "$here/requirements.txt" 2>/dev/null; then
  # PIP_BREAK_SYSTEM_PACKAGES: a Debian system Python refuses pip installs otherwise
  # (PEP 668); on this machine kind python3 is a pyenv build and the flag is a no-op.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
fi
# Isolated venv for Quali's cloudshell-cp-core (clashes with the system attrs/jsonschema).
bash "$here/venv-cloudshell-cpcore.sh"
# Isolated venv for Quali's shellfoundry (`shellfoundry pack` compared with our package zip).
bash "$here/venv-shellfoundry.sh"
# The gates in scripts/test-all.sh: rustfmt and clippy (rustup components) and cargo-machete
# (unused dependencies; pinned, built from crates.io only when missing or another version).
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
machete_version=0.9.2
if [ "$(cargo machete --version 2>/dev/null)" != "$machete_version" ]; then
  echo "install-deps: cargo install --locked cargo-machete@$machete_version"
  cargo install --locked "cargo-machete@$machete_version"
fi
