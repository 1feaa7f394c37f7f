#!/usr/bin/env bash
# Starts the KubeVirt stand-in (PyPI kmock + testing/kubevirt/kubevirt_emulator.py, the KubeVirt
# controllers in kmock's handler API) and writes /run/polyvisor-test/kubevirt.json once it
# answers (see scripts/ci/README.md, "Backend contract"). Idempotent: a healthy instance is reused.
#
# It listens with TLS (self-signed, made by openssl at first start) on POLYVISOR_KUBEVIRT_ADDR
# (default 127.0.9.3:6443). Token "polyvisor" may use namespace `polyvisor` only (403 elsewhere);
# seeded VMs (testing/kubevirt/seed.json): template tpl-fedora (CloudStack template_id),
# stopped base-vm (RAS source_guest), running web-01; `other-team/not-ours` for isolation tests.
# Schema violations of any request go to $run/kubevirt/violations.jsonl (tests fail on them).
# Started with setsid + nohup (stop it: kill "$(cat /run/polyvisor-test/kubevirt/emulator.pid)").
#
# Environment (optional): POLYVISOR_TEST_RUN_DIR (default /run/polyvisor-test), POLYVISOR_KUBEVIRT_ADDR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_KUBEVIRT_ADDR:-127.0.9.3:6443}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/kubevirt"
contract="$run/kubevirt.json"
python="${PYTHON:-python3}"
log() { echo "start-kubevirt: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

healthy() {
  [ -f "$contract" ] && [ -f "$state/emulator.pid" ] || return 1
  local pid; pid="$(cat "$state/emulator.pid")"
  [ -d "/proc/$pid" ] && grep -qa kubevirt_emulator "/proc/$pid/cmdline" 2>/dev/null || return 1
  "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, ssl, sys, urllib.request
s = json.load(open(sys.argv[1]))["settings"]
ctx = ssl.create_default_context(cafile=s["ca_file"])
req = urllib.request.Request(s["server"] + "/apis/kubevirt.io/v1/namespaces/%s/virtualmachines" % s["namespace"],
                             headers={"Authorization": "Bearer " + s["token"]})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    json.load(r)["items"]
PY
}

if healthy; then
  log "reusing the KubeVirt stand-in at https://$addr ($contract)"
  exit 0
fi

if [ -f "$state/emulator.pid" ]; then
  old="$(cat "$state/emulator.pid")"
  if [ -d "/proc/$old" ] && grep -qa kubevirt_emulator "/proc/$old/cmdline" 2>/dev/null; then
    log "stopping unhealthy stand-in (pid $old)"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
  fi
  rm -f "$state/emulator.pid"
fi
rm -f "$contract"

"$python" -c 'import kmock, jsonschema' 2>/dev/null || {
  echo "start-kubevirt: kmock/jsonschema are not installed (python3 -m pip install -r scripts/ci/requirements.txt)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "start-kubevirt: openssl is missing" >&2; exit 1; }

token="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
: > "$state/emulator.out"; : > "$state/violations.jsonl"
(umask 077; setsid nohup "$python" "$repo/testing/kubevirt/kubevirt_emulator.py" --host "$host" --port "$port" \
  --certdir "$state/pki" --token "$token" --namespace polyvisor --seed "$repo/testing/kubevirt/seed.json" \
  --violations "$state/violations.jsonl" >"$state/emulator.out" 2>"$state/emulator.log" </dev/null &
  echo $! > "$state/emulator.pid")
ready=""
for _ in $(seq 1 600); do
  ready="$(head -n1 "$state/emulator.out" 2>/dev/null || true)"
  [ -n "$ready" ] && break
  [ -d "/proc/$(cat "$state/emulator.pid")" ] || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-kubevirt: the stand-in did not start on $addr; its log:" >&2
  tail -n 20 "$state/emulator.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$token" "$state/violations.jsonl" > "$tmp" <<'PY'
import json, sys
ready, token, violations = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
# generous per-call bounds: the stand-in is one Python process on a busy 2-core machine
conn = {"server": ready["listening"], "token": token, "ca_file": ready["ca_file"], "namespace": "polyvisor",
        "connect_timeout": "10", "request_timeout": "30"}
print(json.dumps({
    "settings": dict(conn, driver="kubevirt"),
    "cloudstack": {"extension": {"ca_file": ready["ca_file"]}, "host": conn, "virtualmachine": {},
                   "untagged_networks": True},
    "source_guest": "base-vm",
    "template_id": "tpl-fedora",
    "tls": {"ca_file": ready["ca_file"], "fingerprint": ready["fingerprint"]},
    "violations": violations,
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-kubevirt: the stand-in started but does not answer on https://$addr" >&2; exit 1; }
log "ready: KubeVirt stand-in at https://$addr (pid $(cat "$state/emulator.pid")); contract $contract"
