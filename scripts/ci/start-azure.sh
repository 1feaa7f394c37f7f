#!/usr/bin/env bash
# Starts the project-owned Azure Resource Manager stand-in (testing/azure/armstandin.py: ARM
# for VMs, disks, snapshots and NICs, plus the Entra ID token endpoint) and writes
# /run/polyvisor-test/azure.json once it answers (see scripts/ci/README.md, "Backend
# contract"). Idempotent: a healthy instance is reused.
#
# TLS on a fixed loopback address (POLYVISOR_AZURE_ADDR, default 127.0.9.5:8443) with a
# self-signed certificate made here (openssl); its CA file goes into the contract. Certificate,
# config, log and pid live in /run/polyvisor-test/azure/. Started with setsid + nohup (stop it:
# kill "$(cat /run/polyvisor-test/azure/standin.pid)"). Guests: pv-src (deallocated VM, RAS
# source_guest), pv-tpl (a plain VM, a create source by name), web-01 (running, foreign); gallery image version
# pvgallery/pv-image/1.0.0 (specialized; the CloudStack template_id).
#
# Environment (optional): POLYVISOR_TEST_RUN_DIR (default /run/polyvisor-test), POLYVISOR_AZURE_ADDR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
addr="${POLYVISOR_AZURE_ADDR:-127.0.9.5:8443}"
host="${addr%:*}"; port="${addr##*:}"
state="$run/azure"
contract="$run/azure.json"
python="${PYTHON:-python3}"
log() { echo "start-azure: $*"; }

mkdir -p "$state"; chmod 0700 "$run" "$state"

# Microsoft's traffic validator (npm oav, pinned in testing/azure/package-lock.json) for the
# stand-in's self-trust test (crates/azure/tests/oav_traffic.rs); installed once.
if [ ! -x "$repo/testing/azure/node_modules/.bin/oav" ]; then
  command -v npm >/dev/null || { echo "start-azure: npm is missing (Node 20 + npm)" >&2; exit 1; }
  log "installing oav (npm ci --prefix testing/azure)"
  npm ci --prefix "$repo/testing/azure" --no-audit --no-fund >/dev/null
fi

# Healthy = our pid is alive and a token + VM list work with the current contract's settings.
healthy() {
  [ -f "$contract" ] && [ -f "$state/standin.pid" ] || return 1
  local pid; pid="$(cat "$state/standin.pid")"
  [ -d "/proc/$pid" ] && grep -qa armstandin "/proc/$pid/cmdline" 2>/dev/null || return 1
  "$python" - "$contract" <<'PY' >/dev/null 2>&1
import json, ssl, sys, urllib.parse, urllib.request
s = json.load(open(sys.argv[1]))["settings"]
ctx = ssl.create_default_context(cafile=s["ca_file"])
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": s["client_id"],
                               "client_secret": s["client_secret"], "scope": "x/.default"}).encode()
tok = json.load(urllib.request.urlopen(urllib.request.Request(
    "%s/%s/oauth2/v2.0/token" % (s["authority_host"], s["tenant_id"]), data=form), context=ctx, timeout=5))["access_token"]
url = "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01" % (
    s["resource_manager_endpoint"], s["subscription_id"], s["resource_group"])
json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + tok}), context=ctx, timeout=5))["value"]
PY
}

if healthy; then
  log "reusing the ARM stand-in at https://$addr ($contract)"
  exit 0
fi

if [ -f "$state/standin.pid" ]; then
  old="$(cat "$state/standin.pid")"
  if [ -d "/proc/$old" ] && grep -qa armstandin "/proc/$old/cmdline" 2>/dev/null; then
    log "stopping unhealthy stand-in (pid $old)"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.1; done
  fi
  rm -f "$state/standin.pid"
fi
rm -f "$contract"

command -v openssl >/dev/null || { echo "start-azure: openssl is missing (apt-get install openssl)" >&2; exit 1; }
if [ ! -s "$state/cert.pem" ] || [ ! -s "$state/key.pem" ] || [ ! -s "$state/ca.pem" ]; then
  # A private CA (ca.pem goes into the contract as ca_file) and a leaf for $host: rustls
  # refuses a CA certificate used as the server's own.
  (umask 077; set -e
   openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=polyvisor Azure stand-in CA" \
     -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
     -keyout "$state/ca.key" -out "$state/ca.pem" >/dev/null 2>&1
   openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout "$state/key.pem" -out "$state/leaf.csr" >/dev/null 2>&1
   printf 'subjectAltName=IP:%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' "$host" > "$state/leaf.ext"
   openssl x509 -req -in "$state/leaf.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" -CAcreateserial -days 3650 \
     -extfile "$state/leaf.ext" -out "$state/cert.pem" >/dev/null 2>&1)
fi

secret="$("$python" -c 'import secrets; print(secrets.token_urlsafe(24))')"
sub="$("$python" -c 'import uuid; print(uuid.uuid4())')"
tenant="$("$python" -c 'import uuid; print(uuid.uuid4())')"
client="$("$python" -c 'import uuid; print(uuid.uuid4())')"
(umask 077; "$python" - "$secret" "$sub" "$tenant" "$client" > "$state/config.json" <<'PY'
import json, sys
secret, sub, tenant, client = sys.argv[1:5]
print(json.dumps({"subscription_id": sub, "tenant_id": tenant, "client_id": client, "client_secret": secret,
                  "resource_group": "polyvisor-ci", "location": "westeurope",
                  "guests": [{"name": "pv-src", "power": "deallocated"},
                             {"name": "pv-tpl", "power": "deallocated"},
                             {"name": "web-01", "power": "running"}],
                  "galleries": [{"gallery": "pvgallery", "image": "pv-image", "osState": "Specialized",
                                 "versions": ["1.0.0"]}]}))
PY
)
: > "$state/standin.out"
(umask 077; setsid nohup "$python" "$repo/testing/azure/armstandin.py" --host "$host" --port "$port" \
  --cert "$state/cert.pem" --key "$state/key.pem" --config "$state/config.json" \
  >"$state/standin.out" 2>"$state/standin.log" </dev/null &
  echo $! > "$state/standin.pid")
ready=""
for _ in $(seq 1 150); do
  ready="$(head -n1 "$state/standin.out" 2>/dev/null || true)"
  [ -n "$ready" ] && break
  [ -d "/proc/$(cat "$state/standin.pid")" ] || break
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "start-azure: the ARM stand-in did not start on $addr; its log:" >&2
  tail -n 20 "$state/standin.log" >&2 || true
  exit 1
fi

tmp="$contract.tmp"
(umask 077; "$python" - "$ready" "$state/config.json" "$state/ca.pem" > "$tmp" <<'PY'
import json, sys
ready, conf, ca = json.loads(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
url = ready["listening"]
settings = {"driver": "azure", "tenant_id": conf["tenant_id"], "client_id": conf["client_id"],
            "client_secret": conf["client_secret"], "subscription_id": conf["subscription_id"],
            "resource_group": conf["resource_group"], "location": conf["location"],
            "authority_host": url, "resource_manager_endpoint": url, "ca_file": ca}
print(json.dumps({
    "settings": settings,
    "cloudstack": {"extension": {"ca_file": ca, "authority_host": url, "resource_manager_endpoint": url},
                   "host": dict({k: settings[k] for k in ("tenant_id", "client_id", "client_secret", "subscription_id",
                                                          "resource_group", "location")}, subnet_id=ready["subnet"]),
                   "virtualmachine": {}, "untagged_networks": True},
    "source_guest": "pv-src",
    # CloudStack creates from an Azure Compute Gallery image version (a flagged template VM,
    # e.g. "pv-tpl", works too: a disk copy).
    "template_id": "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/galleries/pvgallery/images/pv-image/versions/1.0.0"
                   % (conf["subscription_id"], conf["resource_group"]),
}, indent=2))
PY
)
mv -f "$tmp" "$contract"
healthy || { echo "start-azure: the stand-in started but does not answer on https://$addr" >&2; exit 1; }
log "ready: ARM stand-in at https://$addr (pid $(cat "$state/standin.pid")); contract $contract"
