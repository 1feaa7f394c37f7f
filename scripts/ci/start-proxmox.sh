#!/usr/bin/env bash
# Starts the long-running fakepve (PyPI fakepve, AGPL, run as a separate process) the backend
# contract describes, and writes /run/polyvisor-test/proxmox.json once it answers (see
# scripts/ci/README.md, "Backend contract"). Idempotent: a healthy instance is reused.
#
# fakepve listens with TLS on a fixed loopback address (POLYVISOR_PVE_ADDR, default
# 127.0.9.1:8006); its certificate, guests file, log and pid live in /run/polyvisor-test/proxmox/.
# It is started with setsid + nohup, so it outlives this script (stop it: kill "$(cat
# /run/polyvisor-test/proxmox/fakepve.pid)"). Guests: template 9000 (CloudStack template_id),
# stopped VM 103 (RAS source_guest), running VM 100.
#
# Environment (optional): POLYVISOR_TEST_RUN_DIR (default /run/polyvisor-test), POLYVISOR_PVE_ADDR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_PVE_ADDR:-127.0.9.1:8006}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/proxmox"
contract="$run/proxmox.json"
python="${PYTHON:-python3}"
log() { echo "start-proxmox: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

# Healthy = our pid is alive and the API answers with the token of the current contract file.
healthy() {
  [ -f "$contract" ] && [ -f "$state/fakepve.pid" ] || return 1
  local pid; pid="$(cat "$state/fakepve.pid")"
  [ -d "/proc/$pid" ] && grep -qa fakepve-launcher "/proc/$pid/cmdline" 2>/dev/null || return 1
  "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, ssl, sys, urllib.request
c = json.load(open(sys.argv[1]))
s = c["settings"]
ctx = ssl.create_default_context(cafile=s["ca_file"])
req = urllib.request.Request("https://%s/api2/json/version" % s["host"], headers={
    "Authorization": "PVEAPIToken=%s!%s=%s" % (s["username"], s["token_name"], s["token_secret"])})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    json.load(r)["data"]["version"]
PY
}

if healthy; then
  log "reusing fakepve at https://$addr ($contract)"
  exit 0
fi

# A stale instance of ours (unhealthy or without a contract file) goes first.
if [ -f "$state/fakepve.pid" ]; then
  old="$(cat "$state/fakepve.pid")"
  if [ -d "/proc/$old" ] && grep -qa fakepve-launcher "/proc/$old/cmdline" 2>/dev/null; then
    log "stopping unhealthy fakepve (pid $old)"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
  fi
  rm -f "$state/fakepve.pid"
fi
rm -f "$contract"

"$python" -c 'import fakepve' 2>/dev/null || {
  echo "start-proxmox: fakepve is not installed (python3 -m pip install -r scripts/ci/requirements.txt)" >&2; exit 1; }

secret="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
cat > "$state/guests.json" <<'JSON'
{"guests": [
  {"vmid": 9000, "name": "tpl-debian", "status": "stopped", "template": true,
   "config": {"cores": "2", "memory": "2048", "scsi0": "local-lvm:base-9000-disk-0,size=8G",
              "net0": "virtio=BC:24:11:00:90:00,bridge=vmbr0", "ostype": "l26", "agent": "1"}},
  {"vmid": 100, "name": "web-01", "status": "running",
   "config": {"scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:01:00,bridge=vmbr0",
              "ostype": "l26", "agent": "1"},
   "agent": {"interfaces": [{"name": "eth0", "hardware-address": "bc:24:11:00:01:00",
             "ip-addresses": [{"ip-address": "192.0.2.50", "ip-address-type": "ipv4", "prefix": 24}]}]}},
  {"vmid": 103, "name": "base-vm", "status": "stopped",
   "config": {"cores": "1", "memory": "1024", "scsi0": "local-lvm:vm-103-disk-0,size=8G",
              "net0": "virtio=BC:24:11:00:01:03,bridge=vmbr0", "ostype": "l26", "agent": "1"}}
]}
JSON
: > "$state/fakepve.out"
(umask 077; setsid nohup "$python" "$here/fakepve-launcher.py" --serve-forever --host "$host" --port "$port" \
  --guests "$state/guests.json" --certdir "$state/pki" --token "root@pam!ci=$secret" \
  >"$state/fakepve.out" 2>"$state/fakepve.log" </dev/null &
  echo $! > "$state/fakepve.pid")
ready=""
for _ in $(seq 1 300); do
  ready="$(head -n1 "$state/fakepve.out" 2>/dev/null || true)"
  [ -n "$ready" ] && break
  [ -d "/proc/$(cat "$state/fakepve.pid")" ] || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-proxmox: fakepve did not start on $addr; its log:" >&2
  tail -n 20 "$state/fakepve.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$secret" > "$tmp" <<'PY'
import json, sys
ready, secret = json.loads(sys.argv[1]), sys.argv[2]
url = ready["listening"]
host_port = url[len("https://"):]
print(json.dumps({
    "settings": {"driver": "proxmox", "host": host_port, "username": "root@pam", "token_name": "ci",
                 "token_secret": secret, "ca_file": ready["ca_file"], "node": "pve1", "ip_wait_timeout": "1"},
    "cloudstack": {
        "extension": {"ca_file": ready["ca_file"]},
        "host": {"url": url, "user": "root@pam", "token": "ci", "secret": secret, "node": "pve1"},
        "virtualmachine": {"is_full_clone": "true"},
    },
    "source_guest": "103",
    "template_id": "9000",
    "tls": {"ca_file": ready["ca_file"], "fingerprint": ready["fingerprint"]},
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-proxmox: fakepve started but does not answer on https://$addr" >&2; exit 1; }
log "ready: fakepve at https://$addr (pid $(cat "$state/fakepve.pid")); contract $contract"
