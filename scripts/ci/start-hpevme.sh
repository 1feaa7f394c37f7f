#!/usr/bin/env bash
# Starts the HPE VM Essentials (Morpheus API) test backend the backend contract describes and
# writes /run/polyvisor-test/hpevme.json once it answers (see scripts/ci/README.md):
# - the project-owned stateful stand-in testing/hpevme/standin.py with TLS on
#   POLYVISOR_HPEVME_ADDR (default 127.0.9.4:8443); every request/response it handles is
#   validated against the official OpenAPI description kept in testing/hpevme/;
# - a stateless Prism mock of the unmodified description on 127.0.9.4:4010 (plain HTTP; the
#   driver's read-only calls are checked against it by crates/hpevme/tests/prism.rs). It
#   needs `npm ci --prefix testing/hpevme` (run here when node_modules is missing).
# Both are started with setsid + nohup and outlive this script; pids, certificate and logs live
# in /run/polyvisor-test/hpevme/. Idempotent: healthy instances are reused.
# Guests: stopped instance `base-vm` (RAS source_guest), flagged template `tpl-ubuntu`
# (CloudStack template_id), running foreign instance `web-01`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_HPEVME_ADDR:-127.0.9.4:8443}"
prism_addr="${POLYVISOR_HPEVME_PRISM_ADDR:-127.0.9.4:4010}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/hpevme"
contract="$run/hpevme.json"
python="${PYTHON:-python3}"
log() { echo "start-hpevme: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

alive() { [ -f "$1" ] && [ -d "/proc/$(cat "$1")" ] && grep -qa "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null; }

healthy() {
  [ -f "$contract" ] && alive "$state/standin.pid" standin.py || return 1
  "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, ssl, sys, urllib.request
c = json.load(open(sys.argv[1]))
s = c["settings"]
ctx = ssl.create_default_context(cafile=s["ca_file"])
tok = c["cloudstack"]["host"]["access_token"]
req = urllib.request.Request(s["url"] + "/api/instances?max=1", headers={"Authorization": "Bearer " + tok})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    json.load(r)["instances"]
PY
}

start_prism() {
  if alive "$state/prism.pid" prism; then return 0; fi
  if [ ! -x "$repo/testing/hpevme/node_modules/.bin/prism" ]; then
    command -v npm >/dev/null || { log "npm missing: the Prism mock is not started"; return 0; }
    npm ci --prefix "$repo/testing/hpevme" --no-audit --no-fund >"$state/npm.log" 2>&1 \
      || { log "npm ci failed (see $state/npm.log): the Prism mock is not started"; return 0; }
  fi
  rm -rf "$state/spec"; mkdir -p "$state/spec"
  tar -xzf "$repo/testing/hpevme/morpheus-openapi-8.0.7.tar.gz" -C "$state/spec"
  (cd "$state/spec" || exit 1
   setsid nohup "$repo/testing/hpevme/node_modules/.bin/prism" mock \
      -h "${prism_addr%:*}" -p "${prism_addr##*:}" openapi.yaml >"$state/prism.log" 2>&1 </dev/null &
   echo $! > "$state/prism.pid")
  log "Prism mock starting on http://$prism_addr (log $state/prism.log)"
}

if healthy; then
  start_prism
  log "reusing the stand-in at https://$addr ($contract)"
  exit 0
fi

if alive "$state/standin.pid" standin.py; then
  old="$(cat "$state/standin.pid")"
  log "stopping unhealthy stand-in (pid $old)"
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
fi
rm -f "$state/standin.pid" "$contract"

"$python" -c 'import openapi_schema_validator, yaml' 2>/dev/null || {
  echo "start-hpevme: openapi-schema-validator is not installed (python3 -m pip install -r scripts/ci/requirements.txt)" >&2; exit 1; }

token="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
password="$("$python" -c 'import secrets; print(secrets.token_hex(12))')"
: > "$state/standin.out"
(umask 077; setsid nohup "$python" "$repo/testing/hpevme/standin.py" --host "$host" --port "$port" \
  --certdir "$state/pki" --token "$token" --username polyvisor --password "$password" \
  >"$state/standin.out" 2>"$state/standin.log" </dev/null &
  echo $! > "$state/standin.pid")
ready=""
for _ in $(seq 1 600); do
  ready="$(head -n1 "$state/standin.out" 2>/dev/null || true)"
  [ -n "$ready" ] && break
  [ -d "/proc/$(cat "$state/standin.pid")" ] || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-hpevme: the stand-in did not start on $addr; its log:" >&2
  tail -n 20 "$state/standin.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$token" "$password" "$prism_addr" > "$tmp" <<'PY'
import json, sys
ready, token, password, prism = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
url = ready["listening"]
print(json.dumps({
    "settings": {"driver": "hpevme", "url": url, "username": "polyvisor", "password": password,
                 "ca_file": ready["ca_file"]},
    "cloudstack": {
        "extension": {"ca_file": ready["ca_file"]},
        "host": {"url": url, "access_token": token},
        "virtualmachine": {},
        "untagged_networks": True,
    },
    "source_guest": ready["source_guest"],
    "template_id": ready["template_id"],
    "foreign_guest": ready["foreign_guest"],
    "tls": {"ca_file": ready["ca_file"], "fingerprint": ready["fingerprint"]},
    "prism": "http://" + prism,
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-hpevme: the stand-in started but does not answer on https://$addr" >&2; exit 1; }
start_prism
log "ready: stand-in at https://$addr (pid $(cat "$state/standin.pid")); contract $contract"
