#!/usr/bin/env bash
# Starts the project-owned WinRM stand-in hosting a fake Hyper-V (testing/hyperv/standin.py:
# WS-Management over HTTPS with NTLM (Extended Protection Strict: the TLS channel binding is
# required) and Basic, running only polyvisor's fixed PowerShell
# scripts against an in-memory estate) and writes /run/polyvisor-test/hyperv.json once a
# WinRM client (pywinrm) runs a command through it. Idempotent: a healthy instance is reused.
#
# TLS on POLYVISOR_HYPERV_ADDR (default 127.0.9.6:5986) with a self-signed certificate made
# at start (openssl); its SHA-256 fingerprint and CA file go into the contract. Certificate,
# NTLM credential file, log and pid live in /run/polyvisor-test/hyperv/ (mode 0700). Started
# with setsid + nohup (stop it: kill "$(cat /run/polyvisor-test/hyperv/standin.pid)").
# Guests: base-vm (off, RAS source_guest), tpl-ubuntu (flagged template, CloudStack
# template_id), web-01 (running, foreign). pip packages: testing/hyperv/requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_HYPERV_ADDR:-127.0.9.6:5986}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/hyperv"
contract="$run/hyperv.json"
python="${PYTHON:-python3}"
log() { echo "start-hyperv: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

alive() { [ -f "$state/standin.pid" ] && [ -d "/proc/$(cat "$state/standin.pid")" ] \
  && grep -qa hyperv/standin.py "/proc/$(cat "$state/standin.pid")/cmdline" 2>/dev/null; }

# The stand-in loads crates/hyperv/scripts/*.ps1 at start: a reused one must run the current ones.
scripts_sum() { cat "$repo"/crates/hyperv/scripts/*.ps1 | sha256sum | cut -d' ' -f1; }

healthy() {
  [ -f "$contract" ] && alive || return 1
  [ "$(cat "$state/scripts.sha256" 2>/dev/null)" = "$(scripts_sum)" ] || return 1
  timeout 30 "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, sys, winrm
s = json.load(open(sys.argv[1]))["settings"]
r = winrm.Session("https://%s:%s/wsman" % (s["host"], s["port"]), auth=(s["username"], s["password"]),
                  transport="ntlm", server_cert_validation="validate", ca_trust_path=s["ca_file"],
                  operation_timeout_sec=5, read_timeout_sec=10).run_cmd("hostname")
assert r.status_code == 0
PY
}

if healthy; then
  log "reusing the stand-in at https://$addr ($contract)"
  exit 0
fi
if alive; then
  old="$(cat "$state/standin.pid")"
  log "stopping unhealthy stand-in (pid $old)"
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
fi
rm -f "$state/standin.pid" "$contract"

"$python" -c 'import winrm, pypsrp, spnego' 2>/dev/null || {
  log "installing testing/hyperv/requirements.txt"
  "$python" -m pip install -q -r "$repo/testing/hyperv/requirements.txt" >"$state/pip.log" 2>&1 || {
    echo "start-hyperv: pip install failed (see $state/pip.log)" >&2; exit 1; }
}

password="$("$python" -c 'import secrets; print(secrets.token_hex(12))')"
scripts_sum > "$state/scripts.sha256"
: > "$state/standin.out"
(umask 077; setsid nohup "$python" "$repo/testing/hyperv/standin.py" --host "$host" --port "$port" \
  --certdir "$state/pki" --username polyvisor --password "$password" --basic --require-channel-binding \
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
  echo "start-hyperv: the stand-in did not start on $addr; its log:" >&2
  tail -n 20 "$state/standin.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$password" > "$tmp" <<'PY'
import json, sys
r, password = json.loads(sys.argv[1]), sys.argv[2]
print(json.dumps({
    "settings": {"driver": "hyperv", "host": r["host"], "port": r["port"], "username": "polyvisor",
                 "password": password, "ca_file": r["ca_file"], "vhd_path": r["vhd_path"],
                 "vm_path": r["vm_path"], "switch": r["switch"]},
    "cloudstack": {
        # The built-in Hyper-V extension's host detail names (url, network_switch, ...).
        "extension": {"ca_file": r["ca_file"]},
        "host": {"url": r["host"], "username": "polyvisor", "password": password,
                 "network_switch": r["switch"], "vhd_path": r["vhd_path"], "vm_path": r["vm_path"]},
        "virtualmachine": {},
        "untagged_networks": True,
    },
    "source_guest": r["source_guest"],
    "template_id": r["template_id"],
    "foreign_guest": r["foreign_guest"],
    "tls": {"ca_file": r["ca_file"], "fingerprint": r["fingerprint"]},
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-hyperv: the stand-in started but pywinrm cannot run a command on https://$addr" >&2; exit 1; }
log "ready: stand-in at https://$addr (pid $(cat "$state/standin.pid")); contract $contract"
