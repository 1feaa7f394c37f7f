#!/usr/bin/env bash
# Starts a real, minimal OpenStack on loopback (Keystone, Glance, Placement, Nova with the fake
# virt driver, Neutron ML2 with an agentless mechanism driver; MariaDB + RabbitMQ) from Debian 12
# packages, and writes
# /run/polyvisor-test/openstack.json once it answers (see scripts/ci/README.md, "Backend
# contract"). Idempotent: a healthy cloud is reused in a few seconds; otherwise
# testing/openstack/openstack-up.sh installs what is missing (one apt-get call, only when
# packages are missing: ~300 packages, ~2 min) and starts what is not running (~2-4 min).
#
# Listeners: 127.0.0.1 ports 5000 (Keystone), 9292 (Glance), 8778 (Placement), 8774 (Nova),
# 9696 (Neutron), 5672/25672/4369 (RabbitMQ/epmd); MariaDB on a unix socket only.
# Stop: bash testing/openstack/openstack-down.sh (by recorded PIDs; --purge wipes the state).
#
# Contract: user `demo` (member of project `demo`) by password, plus an application credential
# of that user (`application_credential` in the file, for the driver's app-credential test);
# source_guest = the stopped server `pv-ci-source`; template_id = the public raw image `tiny`;
# `pv-ci-foreign` is a running server polyvisor did not create (ownership checks); NICs go to
# `pv-net`, a flat Neutron network of project demo; VLAN NICs go to `pv-vlan-N` (N = 100, 200).
#
# Environment (optional): POLYVISOR_TEST_RUN_DIR (default /run/polyvisor-test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run="${POLYVISOR_TEST_RUN_DIR:-/run/polyvisor-test}"
contract="$run/openstack.json"
state=/etc/osmini
log() { echo "start-openstack: $*"; }
[ "$(id -u)" = 0 ] || { echo "start-openstack: run as root" >&2; exit 1; }
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3
mkdir -p "$run" "$state"; chmod 0700 "$run"

# One password per machine for every account of the loopback cloud (kept root-only).
if [ ! -s "$state/password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$state/password")
fi
PW="$(cat "$state/password")"

healthy() {
  [ -f "$contract" ] && [ -x "$PY" ] || return 1
  "$PY" - "$contract" <<'PY' >/dev/null 2>&1
import json, sys, urllib.request
c = json.load(open(sys.argv[1])); s = c["settings"]
body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": s["username"],
        "domain": {"name": "Default"}, "password": s["password"]}}},
        "scope": {"project": {"name": s["project_name"], "domain": {"name": "Default"}}}}}
req = urllib.request.Request(s["auth_url"] + "/auth/tokens", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    tok = r.headers["X-Subject-Token"]
req = urllib.request.Request("http://127.0.0.1:8774/v2.1/servers/" + c["source_guest"],
                             headers={"X-Auth-Token": tok})
with urllib.request.urlopen(req, timeout=10) as r:
    assert json.load(r)["server"]["status"] in ("SHUTOFF", "ACTIVE")
req = urllib.request.Request("http://127.0.0.1:9696/v2.0/networks?name=pv-vlan-100", headers={"X-Auth-Token": tok})
with urllib.request.urlopen(req, timeout=10) as r:
    assert json.load(r)["networks"], "Neutron has no pv-vlan-100 (an older cloud with the stand-in?)"
for name in ("nova-compute", "nova-conductor", "nova-scheduler", "glance-api", "neutron-server"):
    pid = int(open("/run/osmini/%s.pid" % name).read())
    open("/proc/%d/stat" % pid).read()
PY
}

if healthy; then
  log "reusing the loopback OpenStack ($contract)"
  exit 0
fi
rm -f "$contract"
# An older cloud with the project's Neutron stand-in: openstack-up.sh stops it and starts real
# Neutron; Nova is restarted so that it picks up its new vif-plugging settings.
if [ -f /run/osmini/neutron-stub.pid ]; then
  bash "$repo/testing/openstack/openstack-down.sh" >/dev/null 2>&1 || true
fi

t0=$(date +%s)
OSMINI_PASSWORD="$PW" bash "$repo/testing/openstack/openstack-up.sh" > /var/log/osmini-up.log 2>&1 || {
  echo "start-openstack: bring-up failed; last lines of /var/log/osmini-up.log:" >&2
  tail -n 30 /var/log/osmini-up.log >&2; exit 1; }
log "services up in $(( $(date +%s) - t0 )) s"

# Test data for the contract: an application credential of demo, the stopped source server.
tmp="$contract.tmp"
(umask 077; OSMINI_PW="$PW" "$PY" - "$state" > "$tmp" <<'PY'
import json, os, sys, time
from keystoneauth1.identity import v3
from keystoneauth1 import session
state, pw = sys.argv[1], os.environ["OSMINI_PW"]
auth_url = "http://127.0.0.1:5000/v3"
s = session.Session(auth=v3.Password(auth_url=auth_url, username="demo", password=pw, project_name="demo",
                                     user_domain_name="Default", project_domain_name="Default"))
ks = {"service_type": "identity", "interface": "public"}
nova = {"service_type": "compute", "interface": "public"}
glance = {"service_type": "image", "interface": "public"}
uid = s.get_user_id()
# Application credential: its secret is shown only at creation, so it is kept in a root-only file.
acf = os.path.join(state, "app-credential.json")
ac = json.load(open(acf)) if os.path.exists(acf) else None
if ac:
    r = s.get("/users/%s/application_credentials/%s" % (uid, ac["id"]), endpoint_filter=ks, raise_exc=False)
    if r.status_code != 200:
        ac = None
if not ac:
    for old in s.get("/users/%s/application_credentials?name=polyvisor-ci" % uid, endpoint_filter=ks).json()["application_credentials"]:
        s.delete("/users/%s/application_credentials/%s" % (uid, old["id"]), endpoint_filter=ks)
    r = s.post("/users/%s/application_credentials" % uid, endpoint_filter=ks,
               json={"application_credential": {"name": "polyvisor-ci", "description": "polyvisor CI"}}).json()
    ac = {"id": r["application_credential"]["id"], "secret": r["application_credential"]["secret"]}
    with open(acf, "w") as f:
        json.dump(ac, f)
image = [i for i in s.get("/v2/images?name=tiny", endpoint_filter=glance).json()["images"] if i["status"] == "active"][0]["id"]
flavors = s.get("/flavors", endpoint_filter=nova).json()["flavors"]
flavor = [f["id"] for f in flavors if f["name"] == "m1.tiny"][0]
hdr = {"OpenStack-API-Version": "compute 2.47"}
def source():
    for sv in s.get("/servers/detail?name=%5Epv-ci-source%24", endpoint_filter=nova, headers=hdr).json()["servers"]:
        if sv["name"] == "pv-ci-source":
            return sv
sv = source()
if sv and sv["status"] == "ERROR":
    s.delete("/servers/%s" % sv["id"], endpoint_filter=nova); time.sleep(5); sv = None
if not sv:
    s.post("/servers", endpoint_filter=nova, headers=hdr, json={"server": {"name": "pv-ci-source",
           "imageRef": image, "flavorRef": flavor, "networks": "none"}})
deadline = time.time() + 300
while time.time() < deadline:
    sv = source()
    if sv and sv["status"] == "ACTIVE" and not sv["OS-EXT-STS:task_state"] and sv["metadata"].get("polyvisor_template") != "1":
        s.post("/servers/%s/action" % sv["id"], endpoint_filter=nova, headers=hdr, json={"os-stop": None})
    elif sv and sv["metadata"].get("polyvisor_template") == "1":
        s.delete("/servers/%s/metadata/polyvisor_template" % sv["id"], endpoint_filter=nova, headers=hdr)
    elif sv and sv["status"] == "SHUTOFF" and not sv["OS-EXT-STS:task_state"]:
        break
    time.sleep(2)
else:
    raise SystemExit("the source server did not reach SHUTOFF within 300 s")
# A server polyvisor did not create (no metadata): the ownership checks must leave it alone.
if not any(x["name"] == "pv-ci-foreign" for x in s.get("/servers?name=%5Epv-ci-foreign%24", endpoint_filter=nova, headers=hdr).json()["servers"]):
    s.post("/servers", endpoint_filter=nova, headers=hdr, json={"server": {"name": "pv-ci-foreign",
           "imageRef": image, "flavorRef": flavor, "networks": "none"}})
settings = {"driver": "openstack", "auth_url": auth_url, "username": "demo", "password": pw,
            "project_name": "demo", "user_domain_name": "Default", "project_domain_name": "Default",
            "region_name": "RegionOne", "interface": "public", "allow_insecure_http": "true", "network": "pv-net"}
print(json.dumps({
    "settings": settings,
    "cloudstack": {"extension": {k: v for k, v in settings.items() if k != "driver"}, "host": {},
                   "virtualmachine": {}, "untagged_networks": True},
    "source_guest": sv["id"],
    "template_id": image,
    "application_credential": {"application_credential_id": ac["id"], "application_credential_secret": ac["secret"]},
    "admin": {"username": "admin", "password": pw, "project_name": "admin"},
}, indent=2))
PY
) || { rm -f "$tmp"; echo "start-openstack: preparing the test data failed" >&2; exit 1; }
mv -f "$tmp" "$contract"
healthy || { echo "start-openstack: the cloud came up but the contract check fails" >&2; exit 1; }
log "ready in $(( $(date +%s) - t0 )) s: Keystone http://127.0.0.1:5000/v3; contract $contract"
