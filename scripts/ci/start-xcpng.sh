#!/usr/bin/env bash
# Starts the project's XAPI stand-in (testing/xcpng/xapi_standin.py: JSON-RPC + XML-RPC over
# TLS, checked against XAPI's own xenapi.json) as a long-running process, and writes
# /run/polyvisor-test/xcpng.json once it answers (see scripts/ci/README.md, "Backend
# contract"). Idempotent: a healthy instance is reused.
#
# Address: POLYVISOR_XCPNG_ADDR (default 127.0.9.2:8443). Certificate, log and pid live in
# /run/polyvisor-test/xcpng/. Started with setsid + nohup (stop it: kill "$(cat
# /run/polyvisor-test/xcpng/standin.pid)"). Guests: template tpl-debian (CloudStack
# template_id), halted VM base-vm (RAS source_guest), running VM web-01. State is in memory:
# a restart resets it.
#
# Also installs npm xen-api into testing/xcpng/node_modules when it is missing (used by the
# stand-in's self-trust test, crates/xcpng/tests/standin_selftrust.rs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_XCPNG_ADDR:-127.0.9.2:8443}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/xcpng"
contract="$run/xcpng.json"
python="${PYTHON:-python3}"
log() { echo "start-xcpng: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

if [ ! -d "$repo/testing/xcpng/node_modules/xen-api" ] && command -v npm >/dev/null 2>&1; then
  log "installing npm xen-api for the stand-in's self-trust test"
  npm ci --prefix "$repo/testing/xcpng" --no-audit --no-fund >/dev/null 2>&1 \
    || log "npm ci failed; the self-trust test will say so"
fi

healthy() {
  [ -f "$contract" ] && [ -f "$state/standin.pid" ] || return 1
  local pid; pid="$(cat "$state/standin.pid")"
  [ -d "/proc/$pid" ] && grep -qa xapi_standin "/proc/$pid/cmdline" 2>/dev/null || return 1
  "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, ssl, sys, urllib.request
c = json.load(open(sys.argv[1]))
s = c["settings"]
ctx = ssl.create_default_context(cafile=c["tls"]["ca_file"])
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.login_with_password",
                   "params": [s["username"], s["password"], "2.21", "start-xcpng"]}).encode()
req = urllib.request.Request("https://%s/jsonrpc" % s["host"], data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    assert json.load(r)["result"].startswith("OpaqueRef:")
PY
}

if healthy; then
  log "reusing the XAPI stand-in at https://$addr ($contract)"
  exit 0
fi

if [ -f "$state/standin.pid" ]; then
  old="$(cat "$state/standin.pid")"
  if [ -d "/proc/$old" ] && grep -qa xapi_standin "/proc/$old/cmdline" 2>/dev/null; then
    log "stopping unhealthy stand-in (pid $old)"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
  fi
  rm -f "$state/standin.pid"
fi
rm -f "$contract"

secret="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
: > "$state/standin.out"
(umask 077; XAPI_STANDIN_PASSWORD="$secret" setsid nohup "$python" "$repo/testing/xcpng/xapi_standin.py" \
  --host "$host" --port "$port" --certdir "$state/pki" \
  >"$state/standin.out" 2>"$state/standin.log" </dev/null &
  echo $! > "$state/standin.pid")
ready=""
for _ in $(seq 1 300); do
  ready="$(head -n1 "$state/standin.out" 2>/dev/null || true)"
  [ -n "$ready" ] && break
  [ -d "/proc/$(cat "$state/standin.pid")" ] || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-xcpng: the XAPI stand-in did not start on $addr; its log:" >&2
  tail -n 20 "$state/standin.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$secret" > "$tmp" <<'PY'
import json, sys
ready, secret = json.loads(sys.argv[1]), sys.argv[2]
url = ready["listening"]
print(json.dumps({
    "settings": {"driver": "xcpng", "host": url[len("https://"):], "username": "root", "password": secret,
                 "fingerprint": ready["fingerprint"]},
    "cloudstack": {
        "extension": {"fingerprint": ready["fingerprint"]},
        "host": {"url": url, "user": "root", "password": secret},
        "virtualmachine": {},
        "untagged_networks": True,
    },
    "source_guest": ready["vms"]["base-vm"],
    "template_id": ready["vms"]["tpl-debian"],
    "tls": {"ca_file": ready["ca_file"], "fingerprint": ready["fingerprint"]},
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-xcpng: the stand-in started but does not answer on https://$addr" >&2; exit 1; }
log "ready: XAPI stand-in at https://$addr (pid $(cat "$state/standin.pid")); contract $contract"
