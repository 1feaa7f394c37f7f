#!/usr/bin/env bash
# Starts every daemon the tests need (no systemd): runs each start-*.sh beside this file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for s in "$here"/start-*.sh; do
  [ -e "$s" ] || continue
  [ "$s" = "$here/start-services.sh" ] && continue
  echo "start-services: $(basename "$s")"
  bash "$s"
done
