"""Parses `polyvisor cloudshell exec` answers with cloudshell-cp-core's own models, and
feeds Quali's Deploy request fixtures (testing/cloudshell/fixtures) through `exec Deploy`.

Runs in the isolated venv of scripts/ci/venv-cloudshell-cpcore.sh (cp-core 2.5.4 pins an
attrs/jsonschema the system Python cannot take). Called by
crates/cli/tests/cloudshell_cpcore.rs:

    python cpcore_check.py POLYVISOR_BIN SPEC_FIXTURES_DIR QUALI_FIXTURES_DIR WORK_DIR

Strict: every result is rebuilt as the cp-core dataclass (`Model(**fields)`: an unknown
field is a TypeError) and every field's JSON type must match the model default's type.
Prints one line per check; exits 1 on the first failure.
"""

import dataclasses
import json
import os
import subprocess
import sys

from cloudshell.cp.core.request_actions import (
    CleanupSandboxInfraRequestActions,
    DeployVMRequestActions,
    PrepareSandboxInfraRequestActions,
)
from cloudshell.cp.core.request_actions import models as m

BIN, SPEC, QUALI, WORK = sys.argv[1:5]
MODEL = "Polyvisor Cloud Provider"
OUR_PATH = MODEL + ".Polyvisor Clone From Template"
RESULT_MODELS = {
    "DeployApp": m.DeployAppResult,
    "ConnectToSubnet": m.ConnectToSubnetActionResult,
    "PrepareNetwork": m.PrepareCloudInfraResult,
    "PrepareSubnet": m.PrepareSubnetActionResult,
    "CreateKeys": m.CreateKeysActionResult,
    "setVlan": m.SetVlanResult,
    "removeVlan": m.RemoveVlanResult,
    "CleanupNetwork": m.CleanupNetworkResult,
}


class Api:
    """What cp-core's DeployApp asks of a CloudShell API session (password attributes)."""

    class _V:
        def __init__(self, v):
            self.Value = v

    def DecryptPassword(self, v):  # noqa: N802 (CloudShell API name)
        return Api._V(v)


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def strict(cls, data, where):
    """Rebuild `data` as the cp-core dataclass `cls`, checking each field's JSON type."""
    if not isinstance(data, dict):
        fail(f"{where}: not an object: {data!r}")
    try:
        obj = cls(**data)
    except TypeError as e:
        fail(f"{where}: {cls.__name__} refuses {sorted(data)}: {e}")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default is None or default is dataclasses.MISSING:
            continue
        if not isinstance(data[f.name], type(default)) or (type(default) is not bool and isinstance(data[f.name], bool)):
            fail(f"{where}: {cls.__name__}.{f.name} is {type(data[f.name]).__name__}, cp-core has {type(default).__name__}")
    return obj


def vm_details(d, where):
    strict(m.VmDetailsData, d, where)
    for i, p in enumerate(d.get("vmInstanceData", [])):
        strict(m.VmDetailsProperty, p, f"{where}.vmInstanceData[{i}]")
    for i, n in enumerate(d.get("vmNetworkData", [])):
        strict(m.VmDetailsNetworkInterface, n, f"{where}.vmNetworkData[{i}]")
        for j, p in enumerate(n.get("networkData", [])):
            strict(m.VmDetailsProperty, p, f"{where}.vmNetworkData[{i}].networkData[{j}]")


def action_results(resp, where):
    if set(resp) != {"driverResponse"} or set(resp["driverResponse"]) != {"actionResults"}:
        fail(f"{where}: not a DriverResponse: {resp}")
    out = []
    for i, r in enumerate(resp["driverResponse"]["actionResults"]):
        cls = RESULT_MODELS.get(r.get("type"))
        if cls is None:
            fail(f"{where}[{i}]: result type {r.get('type')!r} is not a cp-core result")
        data = dict(r)
        details = data.pop("vmDetailsData", None)
        obj = strict(cls, data, f"{where}[{i}]")
        if details is not None:
            vm_details(details, f"{where}[{i}].vmDetailsData")
        out.append((obj, r))
    print(f"ok    {where}: {len(out)} action result(s) parse as cp-core models")
    return out


def context(remote_uid=None, networking="L3"):
    settings = {"sim_db": os.path.join(WORK, "sim.db"), "sim_task_ms": "0", "sim_boot_ms": "0"}
    c = {
        "connectivity": {"server_address": "127.0.0.1", "cloudshell_api_port": "8029", "admin_auth_token": "t"},
        "resource": {"name": "pv", "model": MODEL, "attributes": {
            MODEL + ".Driver": "sim", MODEL + ".Driver Settings": json.dumps(settings),
            MODEL + ".Driver Secrets": "", MODEL + ".Networking type": networking}},
        "reservation": {"reservation_id": "cpcore-0001", "domain": "Global"},
        "remote_endpoints": [],
    }
    if remote_uid:
        c["remote_endpoints"] = [{"fullname": "app-name__x", "app_context": {"app_request_json": "",
                                  "deployed_app_json": {"name": "app-name__x", "vmdetails": {"uid": remote_uid}}}}]
    return c


def run(command, request, ctx=None):
    payload = json.dumps({"protocol": 1, "command": command, "context": ctx or context(), "request": request})
    p = subprocess.run([BIN, "cloudshell", "exec", command], input=payload.encode(), capture_output=True, timeout=300)
    if p.returncode != 0:
        fail(f"exec {command}: exit {p.returncode}: {p.stderr.decode()[:500]}")
    out = json.loads(p.stdout)
    return json.loads(out["result"]) if isinstance(out.get("result"), str) else out.get("result")


def read(d, name, subs=()):
    s = open(os.path.join(d, name)).read()
    for k, v in subs:
        s = s.replace(k, v)
    return s


def ours(quali_request, template):
    """Quali's request on our shell: same envelope, action ids, app resource and attributes;
    the deployment path and attribute namespace become ours and `Image ID` becomes `Template`."""
    req = json.loads(quali_request)
    for a in req["driverRequest"]["actions"]:
        dep = a["actionParams"]["deployment"]
        old = dep["deploymentPath"]
        dep["deploymentPath"] = OUR_PATH
        for attr in dep["attributes"]:
            name = attr["attributeName"].replace(old + ".", OUR_PATH + ".")
            if name.endswith(".Image ID"):
                name, attr["attributeValue"] = OUR_PATH + ".Template", template
            attr["attributeName"] = name
    return json.dumps(req)


# 1. Quali's own Deploy fixtures: cp-core parses them; polyvisor answers them.
deployed = []
for name in sorted(f for f in os.listdir(QUALI) if f.startswith("quali-") and "deploy" in f and f.endswith(".json")):
    req = read(QUALI, name)
    parsed = DeployVMRequestActions.from_request(req, Api()).deploy_app
    if not parsed.actionId or not parsed.actionParams.deployment.deploymentPath:
        fail(f"{name}: cp-core parsed no deployApp action")
    # As-is (a deployment path that is not ours): an answered failure, never a crash.
    [(r, raw)] = action_results(run("Deploy", req), f"{name} as-is")
    if r.success or "unknown deployment path" not in r.errorMessage or r.actionId != parsed.actionId:
        fail(f"{name} as-is: expected a failed DeployApp for the foreign path, got {raw}")
    # On our deployment path: parsed by cp-core and deployed on sim.
    req = ours(req, "tpl-debian12")
    parsed = DeployVMRequestActions.from_request(req, Api()).deploy_app
    if parsed.actionParams.deployment.deploymentPath != OUR_PATH or parsed.attributes.get(OUR_PATH + ".Template") != "tpl-debian12":
        fail(f"{name}: cp-core did not parse the rewritten request: {parsed}")
    res = action_results(run("Deploy", req), f"{name} on polyvisor")
    r, raw = res[0]
    if not r.success or r.actionId != parsed.actionId or not r.vmUuid or not r.vmName:
        fail(f"{name}: deploy failed: {raw}")
    if not raw.get("vmDetailsData", {}).get("vmNetworkData"):
        fail(f"{name}: no vmDetailsData.vmNetworkData: {raw}")
    print(f"ok    {name}: deployed on sim as {r.vmName}")
    deployed.append(r.vmUuid)

# 2. L3 flow with the spec fixtures: every answer parses as cp-core models.
prep_req = read(SPEC, "prepare-infra.json")
PrepareSandboxInfraRequestActions.from_request(prep_req)
prep = action_results(run("PrepareSandboxInfra", prep_req), "PrepareSandboxInfra")
subnet = next(r.subnetId for r, _ in prep if isinstance(r, m.PrepareSubnetActionResult))
if not all(r.success for r, _ in prep) or not subnet:
    fail(f"PrepareSandboxInfra: {[raw for _, raw in prep]}")
dep = action_results(run("Deploy", read(SPEC, "polyvisor-deploy-l3.json", [("@SUBNET@", subnet)])), "Deploy (L3)")
if not all(r.success for r, _ in dep) or not isinstance(dep[1][0], m.ConnectToSubnetActionResult):
    fail(f"Deploy (L3): {[raw for _, raw in dep]}")
uid = dep[0][0].vmUuid
deployed.append(uid)

# 3. GetVmDetails: a list of cp-core VmDetailsData.
details = run("GetVmDetails", read(SPEC, "get-vm-details.json", [("@VM_UUID@", uid)]))
if not isinstance(details, list) or len(details) != 1:
    fail(f"GetVmDetails: {details}")
vm_details(details[0], "GetVmDetails[0]")
if details[0]["errorMessage"] or not details[0]["vmNetworkData"]:
    fail(f"GetVmDetails: {details}")
print("ok    GetVmDetails: parses as cp-core VmDetailsData")

# 4. L2 connectivity (setVlan/removeVlan) on the Quali-fixture VM.
l2 = deployed[0] if len(deployed) > 1 else uid
mac = ""
for fixture, cls in (("set-vlan.json", m.SetVlanResult), ("remove-vlan.json", m.RemoveVlanResult)):
    res = action_results(run("ApplyConnectivityChanges", read(SPEC, fixture, [("@VM_UUID@", l2), ("@MAC@", mac)]),
                             context(networking="L2")), f"ApplyConnectivityChanges {fixture}")
    if not all(isinstance(r, cls) and r.success for r, _ in res):
        fail(f"{fixture}: {[raw for _, raw in res]}")
    if cls is m.SetVlanResult:
        mac = res[0][0].updatedInterface

# 5. Clean up: delete what was deployed, then CleanupSandboxInfra.
for u in deployed:
    run("DeleteInstance", None, context(remote_uid=u))
cleanup_req = read(SPEC, "cleanup-infra.json")
CleanupSandboxInfraRequestActions.from_request(cleanup_req)
res = action_results(run("CleanupSandboxInfra", cleanup_req), "CleanupSandboxInfra")
if not all(r.success for r, _ in res):
    fail(f"CleanupSandboxInfra: {[raw for _, raw in res]}")
print("PASS  cp-core parses every answer; Quali's Deploy fixtures deployed on sim")
