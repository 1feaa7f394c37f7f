"""`polyvisor check cloudshell` runner: behaves like a CloudShell Execution Server for any
cloud provider shell package. Loads MainClass from src/drivermetadata.xml, builds real
cloudshell-shell-core context objects, points them at a local CloudShell API stand-in, and
runs the sandbox flows plus bad input. Prints one JSON line per case:
{"group", "name", "ok", "message", "ms"}.

Usage: runner.py CONFIG.json   (package, driver, driver_settings, driver_secrets, template,
                                polyvisor, api_host)
       runner.py --requirements PACKAGE   (prints src/requirements.txt; stdlib only)
"""
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from standin import StandIn, encrypt  # noqa: E402

if __name__ == "__main__" and sys.argv[1:2] != ["--requirements"]:
    from cloudshell.shell.core.driver_context import (  # noqa: E402
        AppContext, AutoLoadCommandContext, AutoLoadDetails, CancellationContext, ConnectivityContext,
        ReservationContextDetails, ResourceCommandContext, ResourceContextDetails, ResourceRemoteCommandContext)


def emit(group, name, ok, message, started, skip=False):
    print(json.dumps({"group": group, "name": name, "ok": bool(ok), "message": message, "skip": skip,
                      "ms": int((time.monotonic() - started) * 1000)}), flush=True)


def unpack(path, work):
    """The package's src/ folder and its shell model name, from a folder or an imported zip."""
    if os.path.isdir(path):
        src = os.path.join(path, "src")
        definition = open(os.path.join(path, "shell-definition.yaml"), encoding="utf-8").read()
    else:
        with zipfile.ZipFile(path) as z:
            definition = z.read("shell-definition.yaml").decode("utf-8")
            src = None
            for name in z.namelist():
                if name.endswith(".zip"):
                    inner = zipfile.ZipFile(z.open(name))
                    if "drivermetadata.xml" in inner.namelist():
                        src = os.path.join(work, "src")
                        inner.extractall(src)
            if src is None:
                raise Exception("the package has no driver zip with drivermetadata.xml")
    model = None
    for line in definition.splitlines():
        s = line.strip()
        if s.startswith("vendor.resource.") and s.endswith(":") and model is None:
            model = s[len("vendor.resource."):-1]
    return src, model


class Harness:
    def __init__(self, cfg):
        self.cfg = cfg
        self.work = tempfile.mkdtemp(prefix="pv-cs-check-")
        self.src, self.model = unpack(cfg["package"], self.work)
        meta = ET.parse(os.path.join(self.src, "drivermetadata.xml")).getroot()
        module_name, class_name = meta.get("MainClass").rsplit(".", 1)
        self.commands = {c.get("Name") for c in meta.iter("Command")}
        self.l3 = "PrepareSandboxInfra" in self.commands
        sys.path.insert(0, self.src)
        self.cls = getattr(importlib.import_module(module_name), class_name)
        self.api = StandIn(cfg.get("api_host", "127.0.9.7")).start()
        self.reservation = str(uuid.uuid4())
        self.attrs = {
            "%s.Networking type" % self.model: "L3" if self.l3 else "L2",
            "%s.Polyvisor Path" % self.model: cfg["polyvisor"],
            "%s.Driver" % self.model: cfg["driver"],
            "%s.Driver Settings" % self.model: json.dumps(cfg.get("driver_settings") or {}),
            "%s.Driver Secrets" % self.model: encrypt(json.dumps(cfg.get("driver_secrets") or {})),
        }

    def driver(self):
        d = self.cls()
        d.initialize(self.init_ctx())
        return d

    def connectivity(self):
        return ConnectivityContext(self.api.host, str(self.api.port), "9000", self.api.admin_token, "2024.1", "http")

    def resource(self, name="polyvisor-cp", attrs=None, app_context=None):
        return ResourceContextDetails(str(uuid.uuid4()), name, name, "Resource", "NA", self.model, "Cloud Provider",
                                      "", dict(attrs if attrs is not None else self.attrs), app_context, None, "", "")

    def reservation_ctx(self):
        return ReservationContextDetails("check", "check", "Global", "", "admin", "", self.reservation, "", "",
                                         "admin", "")

    def init_ctx(self):
        return AutoLoadCommandContext(self.connectivity(), self.resource())

    def ctx(self):
        return ResourceCommandContext(self.connectivity(), self.resource(), self.reservation_ctx(), [])

    def remote_ctx(self, app):
        deployed = json.dumps({"name": app["name"], "address": "", "attributes": [],
                               "vmdetails": {"id": str(uuid.uuid4()), "cloudProviderId": "cp", "uid": app["uid"],
                                             "vmCustomParams": app["params"]}})
        ep = self.resource(app["name"], {}, AppContext("", deployed))
        return ResourceRemoteCommandContext(self.connectivity(), self.resource(), self.reservation_ctx(), [ep])

    def deploy_request(self, app_name, path=None, template=None, subnet=None):
        path = path or "%s.Polyvisor Clone From Template" % self.model
        attr = lambda n, v: {"attributeName": "%s.%s" % (path, n), "attributeValue": v, "type": "attribute"}
        actions = [{"actionId": str(uuid.uuid4()), "type": "deployApp", "actionParams": {
            "type": "deployAppParams", "appName": app_name,
            "deployment": {"type": "deployAppDeploymentInfo", "deploymentPath": path, "attributes": [
                attr("Template", template if template is not None else self.cfg["template"]),
                attr("Linked Clone", "False"), attr("Wait for IP", "True"), attr("Autoload", "False")]},
            "appResource": {"type": "appResourceInfo", "attributes": [
                {"attributeName": "User", "attributeValue": "", "type": "attribute"}]}}}]
        if subnet:
            actions.insert(0, {"actionId": str(uuid.uuid4()), "type": "connectSubnet", "actionParams": {
                "type": "connectToSubnetParams", "cidr": "10.0.1.0/24", "subnetId": subnet, "isPublic": False,
                "vnicName": None, "subnetServiceAttributes": []}})
        return json.dumps({"driverRequest": {"actions": actions}})


def results(text):
    v = json.loads(text)
    r = v["driverResponse"]["actionResults"]
    for x in r:
        for k in ("type", "actionId", "success", "infoMessage", "errorMessage"):
            if k not in x:
                raise AssertionError("result without %s: %s" % (k, x))
    return r


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def main():
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    h = Harness(cfg)
    state = {}
    flow = "L3" if h.l3 else "L2"
    wait_ip = cfg.get("wait_for_ip", True)

    def case(group, name, fn):
        started = time.monotonic()
        try:
            msg = fn() or ""
            emit(group, name, True, msg, started)
            return True
        except Exception as e:  # noqa: BLE001 - every failure is a case result
            emit(group, name, False, "%s: %s" % (type(e).__name__, e) + ("\n" + traceback.format_exc(limit=3)
                                                                          if cfg.get("verbose") else ""), started)
            return False

    def inventory():
        check(isinstance(h.driver().get_inventory(h.init_ctx()), AutoLoadDetails), "get_inventory: no AutoLoadDetails")
        check(h.api.recorded("DecryptPassword"), "Driver Secrets were not decrypted through the API")

    def prepare():
        req = {"driverRequest": {"actions": [
            {"actionId": "p1", "type": "prepareCloudInfra", "actionParams": {"type": "prepareCloudInfraParams", "cidr": "10.0.0.0/16"}},
            {"actionId": "p2", "type": "prepareSubnet", "actionParams": {"type": "prepareSubnetParams", "cidr": "10.0.1.0/24",
                                                                         "alias": "DefaultSubnet", "isPublic": False}},
            {"actionId": "p3", "type": "createKeys"}]}}
        r = results(h.driver().PrepareSandboxInfra(h.ctx(), json.dumps(req), CancellationContext()))
        by = {x["actionId"]: x for x in r}
        check([by[i]["type"] for i in ("p1", "p2", "p3")] == ["PrepareNetwork", "PrepareSubnet", "CreateKeys"], str(r))
        check(all(x["success"] for x in r), str(r))
        state["subnet"] = by["p2"]["subnetId"]

    def deploy():
        name = "check-app-%s" % h.reservation[:6]
        r = results(h.driver().Deploy(h.ctx(), h.deploy_request(name, subnet=state.get("subnet")), CancellationContext()))
        d = [x for x in r if x["type"] == "DeployApp"][0]
        check(d["success"], d["errorMessage"])
        check(d["vmUuid"] and d["vmName"], "no vmUuid/vmName")
        if state.get("subnet"):
            c = [x for x in r if x["type"] == "ConnectToSubnet"]
            check(c and c[0]["success"] and c[0]["interface"], "ConnectToSubnet: %s" % c)
        params = [{"name": k, "value": str(v)} for k, v in (d.get("deployedAppAdditionalData") or {}).items()]
        state["app"] = {"name": d["vmName"], "uid": d["vmUuid"], "params": params}
        return d["vmUuid"]

    def need_app():
        check("app" in state, "no deployed app (Deploy failed)")
        return state["app"]

    def set_vlan():
        app = need_app()
        req = {"driverRequest": {"actions": [{"type": "setVlan", "actionId": "v1", "connectionId": "c1",
               "connectionParams": {"type": "setVlanParameter", "vlanId": "42", "mode": "Access", "vlanServiceAttributes": []},
               "connectorAttributes": [], "actionTarget": {"type": "actionTarget", "fullName": app["name"], "fullAddress": ""},
               "customActionAttributes": [{"attributeName": "VM_UUID", "attributeValue": app["uid"], "type": "customAttribute"}]}]}}
        r = results(h.driver().ApplyConnectivityChanges(h.ctx(), json.dumps(req)))
        check(r[0]["type"] == "setVlan" and r[0]["success"] and r[0]["updatedInterface"], str(r))
        state["iface"] = r[0]["updatedInterface"]

    def remove_vlan():
        app = need_app()
        req = {"driverRequest": {"actions": [{"type": "removeVlan", "actionId": "v2", "connectionId": "c1",
               "connectionParams": {"type": "setVlanParameter", "vlanId": ["42"], "mode": "Access"},
               "connectorAttributes": [{"attributeName": "Interface", "attributeValue": state.get("iface", ""), "type": "connectorAttribute"}],
               "customActionAttributes": [{"attributeName": "VM_UUID", "attributeValue": app["uid"], "type": "customAttribute"}]}]}}
        r = results(h.driver().ApplyConnectivityChanges(h.ctx(), json.dumps(req)))
        check(r[0]["type"] == "removeVlan" and r[0]["success"], str(r))

    def power_on():
        h.driver().PowerOn(h.remote_ctx(need_app()), None)

    def refresh_ip():
        app = need_app()
        h.driver().remote_refresh_ip(h.remote_ctx(app), None, CancellationContext())
        got = [c for c in h.api.recorded("UpdateResourceAddress") if c.get("resourceFullPath") == app["name"]]
        check(got and got[-1].get("resourceAddress"), "no UpdateResourceAddress for %s" % app["name"])
        return got[-1]["resourceAddress"]

    def vm_details():
        app = need_app()
        req = {"items": [{"appRequestJson": "", "deployedAppJson": {"name": app["name"], "vmdetails": {
            "id": "x", "cloudProviderId": "cp", "uid": app["uid"], "vmCustomParams": app["params"]}}}]}
        r = json.loads(h.driver().GetVmDetails(h.ctx(), json.dumps(req), CancellationContext()))
        check(isinstance(r, list) and r[0]["appName"] == app["name"] and not r[0]["errorMessage"], str(r))
        nets = r[0]["vmNetworkData"]
        check(any(n["isPrimary"] and (n["privateIpAddress"] or not wait_ip) for n in nets),
              "no primary NIC with an address: %s" % nets)

    def security_groups():
        app = need_app()
        req = [{"deployedApp": {"name": app["name"], "vmdetails": {"uid": app["uid"], "vmCustomParams": app["params"]}},
                "securityGroupsConfigurations": [{"subnetId": state["subnet"], "rules": [
                    {"fromPort": "22", "toPort": "22", "protocol": "TCP", "source": "10.0.5.7"}]}]}]
        r = json.loads(h.driver().SetAppSecurityGroups(h.ctx(), json.dumps(req)))
        check(r == [{"appName": app["name"], "success": True, "error": ""}], str(r))

    def power_off():
        h.driver().PowerOff(h.remote_ctx(need_app()), None)

    def delete():
        h.driver().DeleteInstance(h.remote_ctx(need_app()), None)
        h.driver().DeleteInstance(h.remote_ctx(need_app()), None)  # a missing VM is success

    def cleanup():
        req = {"driverRequest": {"actions": [{"actionId": "c1", "type": "cleanupNetwork"}]}}
        r = results(h.driver().CleanupSandboxInfra(h.ctx(), json.dumps(req)))
        check(r[0]["type"] == "CleanupNetwork" and r[0]["success"], str(r))

    case("provider", "get_inventory probes the driver (secrets decrypted via the API)", inventory)
    if h.l3:
        case(flow, "PrepareSandboxInfra", prepare)
    case(flow, "Deploy", deploy)
    if not h.l3:
        case(flow, "ApplyConnectivityChanges setVlan", set_vlan)
    case(flow, "PowerOn", power_on)
    if wait_ip:
        case(flow, "remote_refresh_ip (UpdateResourceAddress)", refresh_ip)
    else:
        emit(flow, "remote_refresh_ip (UpdateResourceAddress)", True, "Wait for IP is false (--no-wait-for-ip)",
             time.monotonic(), skip=True)
    case(flow, "GetVmDetails", vm_details)
    if h.l3:
        case(flow, "SetAppSecurityGroups", security_groups)
    else:
        case(flow, "ApplyConnectivityChanges removeVlan", remove_vlan)
    case(flow, "PowerOff", power_off)
    case(flow, "DeleteInstance (twice)", delete)

    def unknown_path():
        r = results(h.driver().Deploy(h.ctx(), h.deploy_request("bad-path", path="Some Shell.Not A Path"), CancellationContext()))
        check(not r[0]["success"] and r[0]["errorMessage"], str(r))

    def malformed():
        try:
            h.driver().Deploy(h.ctx(), "{not json", CancellationContext())
        except Exception as e:  # noqa: BLE001
            check("malformed" in str(e) or "JSON" in str(e), "unhelpful error: %s" % e)
            return
        raise AssertionError("a malformed request was accepted")

    def missing_template():
        r = results(h.driver().Deploy(h.ctx(), h.deploy_request("no-template", template="polyvisor-no-such-template"),
                                      CancellationContext()))
        check(not r[0]["success"] and r[0]["errorMessage"], str(r))

    def cancelled():
        c = CancellationContext()
        c.is_cancelled = True
        started = time.monotonic()
        try:
            h.driver().Deploy(h.ctx(), h.deploy_request("cancelled-app"), c)
        except Exception as e:  # noqa: BLE001
            check("cancel" in str(e).lower(), "unexpected error: %s" % e)
            check(time.monotonic() - started < 60, "cancellation took too long")
            return
        raise AssertionError("a cancelled Deploy returned normally")

    case("bad input", "unknown deployment path -> success:false", unknown_path)
    case("bad input", "malformed request JSON -> error", malformed)
    case("bad input", "missing template -> success:false", missing_template)
    case("bad input", "cancelled Deploy -> Operation cancelled", cancelled)
    if h.l3:
        case(flow, "CleanupSandboxInfra", cleanup)
    h.api.stop()


def requirements(path):
    work = tempfile.mkdtemp(prefix="pv-cs-req-")
    src, _ = unpack(path, work)
    req = os.path.join(src, "requirements.txt")
    sys.stdout.write(open(req, encoding="utf-8").read() if os.path.exists(req) else "")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--requirements"]:
        requirements(sys.argv[2])
    else:
        main()
